"""What `python -m charrnn bench` times: the book's loop written literally, the contenders per cell, how a shape is
timed, and the tanh RNN's ceiling and batched-trials figures."""
