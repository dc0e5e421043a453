"""The worker, and the only place its parts are wired: the ingest service (flows.raw ->
flows.v1), the Faust app (flows.v1 -> the link stages), HTTP, logs, start and stop.
"""
