"""``python -m shared.ops.lag``: the lag CLI on its own."""

from shared.ops.lag.commands import lag_app

lag_app()
