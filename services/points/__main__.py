"""python -m services.points: run the points service."""

from services.points.bootstrap import build
from shared.runtime import run_service
from shared.runtime.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    run_service(build(settings), settings)
