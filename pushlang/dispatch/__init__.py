"""Delivery: turning `send` decisions into notifications on browsers' push services."""
