# charrnn studio in a container: a Hugging Face Space with the Docker SDK, or any host that runs one.
# CPU torch from PyTorch's CPU wheel index (no CUDA libraries: a much smaller image), port 8501, a non-root user,
# and a health check on Streamlit's own endpoint. Runs, checkpoints and studies belong in a database server:
# set CHARRNN_DATABASE_URL (a Space's secret) or the app's [connections.charrnn] secret, since a Space's disk is
# gone at every restart. README "Deploy" says what was tested and what was not.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CHARRNN_DEMO=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY requirements.txt requirements-postgres.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.10,<3" \
    && pip install -r requirements-postgres.txt

COPY --chown=user . .
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
# A host that gives secrets as environment variables (a Space's) can give the app's whole secrets.toml as one,
# STREAMLIT_SECRETS: it is written where Streamlit reads it before the server starts.
CMD ["sh", "-c", "if [ -n \"$STREAMLIT_SECRETS\" ]; then mkdir -p .streamlit && printf '%s\\n' \"$STREAMLIT_SECRETS\" > .streamlit/secrets.toml; fi; exec streamlit run streamlit_app.py --server.port=8501 --server.address=0.0.0.0 --server.headless=true"]
