"""Measuring what works before it takes the traffic: experiment arms and sticky assignment (`arms`), and the
statistics of an experiment's outcome per arm (`analysis`). The impression log both read has the schema
`aisle.types.IMPRESSION_SCHEMA`."""
