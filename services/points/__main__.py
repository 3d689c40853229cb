"""python -m services.points: run the points service."""

from services.points.bootstrap import SERVICE
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(SERVICE)
