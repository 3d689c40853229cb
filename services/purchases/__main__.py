"""python -m services.purchases: run the purchases service."""

from services.purchases.bootstrap import SERVICE
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(SERVICE)
