"""The bounded set of reasons a raw flow record is refused (a Prometheus label and a DLQ header)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    EMPTY = "empty"  # zero-length message
    OVERSIZED = "oversized"  # longer than ingest.max_record_bytes
    BAD_ENCODING = "bad_encoding"  # not UTF-8
    NOT_JSON = "not_json"  # not parseable as JSON
    NOT_PROTOBUF = "not_protobuf"  # goflow2-protobuf: not a valid FlowMessage
    NOT_OBJECT = "not_object"  # JSON, but not an object
    UNKNOWN_FORMAT = "unknown_format"  # an object of no supported format
    MISSING_FIELD = "missing_field"  # a required field is absent
    WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type
    NEGATIVE_COUNTER = "negative_counter"  # bytes or packets below zero
    INVALID_VALUE = "invalid_value"  # out of range: port, protocol, address, name, counter size
    TIME_ORDER = "time_order"  # flow ends before it starts
    TIME_RANGE = "time_range"  # timestamps far in the past or future of the Kafka append time
    INTERNAL_ERROR = "internal_error"  # inferwatch failed on the batch (a bug; see the log)


REASONS: tuple[str, ...] = tuple(r.value for r in Reason)
