"""Generate: continue a prefix with this session's model, a saved run or a checkpoint (D2L 8.5.4 `predict_ch8`)."""

import streamlit as st

import ui
import ui.links
import ui.models
from charrnn.generate import MAX_PREDS, MAX_PREFIX, generate, next_char_probs

ui.via_entry(__file__)
ui.links.restore_and_sync("generate")  # a shared link's settings, and the address kept in step

st.title("Generate")
ui.links.link_to_this_view("generate")
snap = ui.runner().snapshot()
choice = st.radio("Model", ui.models.GEN_MODELS, **ui.bound("gen_model", "generate"), horizontal=True)
if choice == "saved run":
    model, vocab = ui.models.saved_run_model()  # the run picker; stops the page when there is nothing to pick
elif choice == "checkpoint file":
    model, vocab = ui.models.checkpoint_file_model()  # the uploader; stops the page until a checkpoint loads
elif snap.model is None:
    newest = None if snap.running else ui.models.newest_finished_run()
    if snap.running:
        st.info("A run is training in this session; its model appears here when it ends.")
        ui.wait_for_run()
        st.stop()
    if newest is None:
        st.info("No model has been trained in this session yet, and no finished run is in the store.")
        st.button(
            f"Quick training: the book's recipe on {ui.device_text(st.session_state['hp_device'])}",
            on_click=ui.quick_train,
            type="primary",
            key="gen_quick",
        )
        if st.session_state.get("train_error"):
            ui.error(st.session_state["train_error"])
        st.stop()
    try:
        model, vocab, epoch = ui.models.run_model(newest["id"])
    except ValueError as e:  # CheckpointError, or a device that is not there
        ui.error(f"Run: {e}")
        st.stop()
    st.caption("No model has been trained in this session yet; using the newest finished run of the store:")
    st.text(f"{newest['name']} (run {newest['id']}, checkpoint after epoch {epoch})")
else:
    model, vocab = snap.model, snap.vocab
    st.caption(f"This session's model, {snap.status} after {len(snap.history)} epochs: {snap.summary}")
st.caption(ui.literal(f"The model: {ui.views.model_text(model.config)}, a vocab of {len(vocab)} tokens."))

c = st.columns([3, 1, 2])
c[0].text_input("prefix", max_chars=MAX_PREFIX, **ui.bound("gen_prefix", "generate"))
c[1].number_input("characters to generate", min_value=0, max_value=MAX_PREDS, **ui.bound("gen_num", "generate"))
if len(st.session_state["gen_prefix"]) >= MAX_PREFIX:  # Streamlit cuts longer input at max_chars
    c[0].caption(f"The prefix is at its limit of {MAX_PREFIX:,} characters; longer text is cut there.")
c[2].radio("decoding", ["greedy (the book)", "sampling"], **ui.bound("gen_decoding", "generate"), horizontal=True)
sampling = st.session_state["gen_decoding"] == "sampling"
temperature, top_k, seed = 0.0, None, None
if sampling:
    c = st.columns(3)
    temperature = c[0].slider(
        "temperature", min_value=0.05, max_value=3.0, step=0.05, **ui.bound("gen_temperature", "generate")
    )
    top_k = (
        c[1].number_input("top-k (0 = all)", min_value=0, max_value=len(vocab), **ui.bound("gen_top_k", "generate"))
        or None
    )
    seed = c[2].number_input("seed", step=1, **ui.bound("gen_seed", "generate"))
if st.button("Generate", type="primary", key="gen_go"):
    try:
        result = generate(
            model,
            vocab,
            st.session_state["gen_prefix"],
            st.session_state["gen_num"],
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )
        st.session_state["gen_result"] = (id(model), result)
    except ValueError as e:
        ui.error(str(e))
model_id, result = st.session_state.get("gen_result", (None, None))
if result is None or model_id != id(model):
    st.stop()

if result.unknown:
    st.warning("These prefix characters are not in the model's vocabulary and were fed as <unk>:")
    st.text(" ".join(repr(ch) for ch in result.unknown))
st.caption("grey: the prefix (warm-up), bold blue: generated, · a space; below, the plain text")
ui.show_continuation(result.prefix, result.generated)
st.code(result.text, language=None)

if result.generated:
    step = 1
    if len(result.generated) > 1:
        st.session_state["gen_step"] = min(st.session_state.get("gen_step", 1), len(result.generated))
        step = st.slider("step", min_value=1, max_value=len(result.generated), key="gen_step")
    context = result.prefix + result.generated[: step - 1]
    probs = next_char_probs(model, vocab, context, temperature=temperature or 1.0)
    top = probs.topk(min(10, len(vocab)))
    tokens = [vocab.idx_to_token[i] for i in top.indices.tolist()]
    chosen = result.generated[step - 1]
    colors = ["#d62728" if t == chosen else "#1f77b4" for t in tokens]
    labels = [ui.views.token_label(t) for t in tokens]
    fig = ui.views.bar_figure(labels, top.values.tolist(), "next character", "probability", 320, colors)
    st.caption(f"Top next-character probabilities at step {step} (red: the character generated there), after:")
    st.text(ui.views.visible_chars(context[-60:]))
    st.plotly_chart(fig, key="gen_probs")
