"""Step 2: the student (a real hand's inputs): network, distillation from the oracle, PPO
finetuning with the oracle as critic, export, and loading any checkpoint as a policy."""
