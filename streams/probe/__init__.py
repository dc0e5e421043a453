"""`inferwatch probe`: packets (an interface or a capture) metered into native flow records
with packet summaries, published to flows.raw.
"""
