"""The drift monitor: ingests payload-log CloudEvents, keeps every logged row, and (next) judges drift."""
