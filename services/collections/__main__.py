"""python -m services.collections: run the collections service."""

from services.collections.bootstrap import SERVICE
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(SERVICE)
