"""Training: data, losses (SPEC section 3), schedule, the generic loop and its objectives."""
