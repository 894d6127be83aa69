import torch

# Toy sizes: one thread is faster than two contending ones on a shared machine (8 s -> 0.1 s a step).
torch.set_num_threads(1)
