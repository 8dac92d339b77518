"""Membership-inference auditing: attack scores from saved logits, and the metrics that grade them."""
