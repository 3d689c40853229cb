"""python -m services.reminders: run the reminders service."""

from services.reminders.bootstrap import SERVICE
from shared.runtime import run_service

if __name__ == "__main__":
    run_service(SERVICE)
