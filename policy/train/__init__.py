"""Training the learned policy (PPO from stable-baselines3); imports torch, so never on the live path."""
