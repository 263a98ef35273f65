"""Helpers of pywharf's test suite: distribution builder, server runner, real clients."""
