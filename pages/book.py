"""Book: the book's runs with its settings, beside its figures: chapter 8's three RNNs (D2L 8.5 and 8.6)
and chapter 9's five gated and deep ones (9.1-9.3), each chapter queued with one button."""

import streamlit as st

import ui
import ui.book

ui.via_entry(__file__)

st.title("Book")
st.write(
    "Each of the book's runs trains on the first 10,000 characters of The Time Machine with its settings (500 "
    "epochs, batch 32, 35 steps, clipping at 1) and is recorded as a run. Beside the book's "
    "perplexity you see what it never showed: the perplexity on the 2,000 characters that follow the training "
    "text. A chapter's runs go one after another on the device chosen in the sidebar; one chapter at a time."
)

st.header("Chapter 8: the RNN")
st.write(
    "Three models: the scratch RNN (512 hidden units) with its state carried across minibatches, the same with "
    "the state reset before every minibatch, and the concise `nn.RNN` of section 8.6 with 256 hidden units. "
    "`python -m charrnn reproduce` runs the same from a terminal."
)
ui.book.section(8, "Run the three")

st.header("Chapter 9: GRU, LSTM and a deep LSTM")
st.markdown(
    "Five models, 256 hidden units each, trained with the chapter 8 loop, the state carried across minibatches:\n"
    "- **scratch GRU** (9.1): the book's gated recurrent unit, its reset gate applied to the state before "
    "`W_hh`; lr 1.\n"
    "- **concise nn.GRU** (9.1): PyTorch's GRU, which applies the reset gate after the product with `W_hh` "
    "(`R * (H W_hh + b)`): a different function from the book's scratch GRU; lr 1.\n"
    "- **scratch LSTM** (9.2): the book's long short-term memory, input, forget and output gates and a memory "
    "cell; lr 1.\n"
    "- **concise nn.LSTM** (9.2): PyTorch's LSTM, the same function as the scratch one; lr 1.\n"
    "- **deep nn.LSTM, 2 layers** (9.3): two stacked concise LSTM layers; lr 2, as the book sets it.\n\n"
    "The book's training perplexities are 1.1, 1.1, 1.3, 1.2 and 1.0; a run is counted as reproduced when its "
    "own is within 0.3. `python -m charrnn reproduce --chapter 9` runs the same from a terminal."
)
ui.book.section(9, "Run the five")
