"""python -m services.offers: run the offers service."""

from services.offers.bootstrap import SERVICE
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(SERVICE)
