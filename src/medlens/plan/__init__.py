"""Plans: every choice training makes, derived from the fingerprint by readable rules, written to plan.yaml."""
