"""Agents: IQ-MPC and (later) baselines."""
