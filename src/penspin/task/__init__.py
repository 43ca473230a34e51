"""The pen-spinning task: observations, reward, resets, randomisation, grasp cache."""
