"""Everything that talks to Consul or reads its answers: client, blocking-query rules,
normalization of answers into the model, and the watch loops."""
