"""Pure codecs: Kafka message bytes <-> flow batches (pmacct, goflow2, native), the
flows.v1 wire format, the dead-letter reasons and alert events. No I/O.
"""
