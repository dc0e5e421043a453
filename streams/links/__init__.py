"""Per-link stages, fed batches by the worker: analysis (windows, counters, top talkers),
classification and QoE, anomalies, congestion, their state; the link and endpoint
catalogs. No Kafka, no Faust: they run the same in the worker, the tools and the tests.
"""
