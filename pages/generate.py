"""Generate: continue a prefix with a saved run's checkpoint or a checkpoint file (D2L 8.5.4 `predict_ch8`)."""

import streamlit as st

import ui
import ui.generating
import ui.links
import ui.models
from charrnn.generate import MAX_PREDS, MAX_PREFIX, next_char_probs

ui.via_entry(__file__)
ui.links.restore_and_sync("generate")  # a shared link's settings, and the address kept in step

st.title("Generate")
chosen = ui.models.choose("generate", ui.generating.no_model_yet)  # stops the page when there is no model
ui.links.link_to_this_view("generate")  # after the pick: the link names the model
model, vocab = chosen.model, chosen.vocab

c = st.columns([3, 1, 2])
c[0].text_input("prefix", max_chars=MAX_PREFIX, **ui.bound("gen_prefix", "generate"))
c[1].number_input("characters to generate", min_value=0, max_value=MAX_PREDS, **ui.bound("gen_num", "generate"))
if len(st.session_state["gen_prefix"]) >= MAX_PREFIX:  # Streamlit cuts longer input at max_chars
    c[0].caption(f"The prefix is at its limit of {MAX_PREFIX:,} characters; longer text is cut there.")
c[2].radio("decoding", ["greedy (the book)", "sampling"], **ui.bound("gen_decoding", "generate"), horizontal=True)
if st.session_state["gen_decoding"] == "sampling":
    c = st.columns(3)
    c[0].slider("temperature", min_value=0.05, max_value=3.0, step=0.05, **ui.bound("gen_temperature", "generate"))
    c[1].number_input("top-k (0 = all)", min_value=0, max_value=len(vocab), **ui.bound("gen_top_k", "generate"))
    c[2].number_input("seed", step=1, **ui.bound("gen_seed", "generate"))
inputs = ui.generating.inputs(chosen)
made, result = st.session_state.get("gen_result", (None, None))
pressed = st.button("Generate", type="primary", key="gen_go")
if pressed or made is None or made[0] != chosen.ident:  # a model with no result of its own gets one at once
    made, result = ui.generating.run(chosen, inputs)
if result is None:
    st.stop()
stale = ui.generating.changed(made, inputs)
if stale:  # the result on screen was made with other inputs: it says so, and its chart is not drawn
    st.warning(ui.literal(f"Out of date: made with another {', '.join(stale)}. Press Generate for the settings above."))

if result.unknown:
    st.warning("These prefix characters are not in the model's vocabulary and were fed as <unk>:")
    st.text(" ".join(repr(ch) for ch in result.unknown))
st.caption("grey: the prefix (warm-up), bold blue: generated, · a space; below, the plain text")
ui.show_continuation(result.prefix, result.generated)
st.code(result.text, language=None)

if result.generated and not stale:
    step = 1
    if len(result.generated) > 1:
        st.session_state["gen_step"] = min(st.session_state.get("gen_step", 1), len(result.generated))
        step = st.slider("step", min_value=1, max_value=len(result.generated), key="gen_step")
    context = result.prefix + result.generated[: step - 1]
    probs = next_char_probs(model, vocab, context, temperature=inputs["temperature"] or 1.0)
    top = probs.topk(min(10, len(vocab)))
    tokens = [vocab.idx_to_token[i] for i in top.indices.tolist()]
    chosen_token = result.generated[step - 1]
    colors = ["#d62728" if t == chosen_token else "#1f77b4" for t in tokens]
    labels = [ui.views.token_label(t) for t in tokens]
    fig = ui.views.bar_figure(labels, top.values.tolist(), "next character", "probability", 320, colors)
    st.caption(f"Top next-character probabilities at step {step} (red: the character generated there), after:")
    st.text(ui.views.visible_chars(context[-60:]))
    st.plotly_chart(fig, key="gen_probs")
