"""Traffic steering: which pool a request at an entry goes to."""
