"""Alert delivery: `inferwatch dispatch` (alerts.v1 -> signed webhooks, retried, grouped)
and `inferwatch sink`, a receiver that shows what arrives.
"""
