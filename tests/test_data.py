"""Corpus, vocab and download path against the book's published facts (BOOK.md)."""

import http.server
import socket
import threading
from pathlib import Path

import pytest

from charrnn import data
from charrnn.data import CorpusError, load_corpus
from charrnn.vocab import Vocab

BOOK_ORDER = ["<unk>", " ", *"etainoshrdlmucfwgypbvkxzjq"]


def test_time_machine_facts(full_corpus):
    assert full_corpus.num_lines == 3221
    assert len(full_corpus) == 170580
    assert len(full_corpus.vocab) == 28
    assert full_corpus.vocab.idx_to_token == BOOK_ORDER
    counts = dict(full_corpus.vocab.token_freqs)
    assert counts[" "] == 29927 and counts["e"] == 17838 and counts["q"] == 95


def test_book_preprocessing_joins_lines_without_separator(full_corpus):
    # "...to speak of him" + "was expounding..." -> "himwas" (BOOK.md)
    assert "himwas" in full_corpus.text and "filbycan" in full_corpus.text
    assert set(full_corpus.text) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_recipe_truncates_after_building_the_vocab(recipe_corpus, full_corpus):
    assert len(recipe_corpus) == 10000
    assert recipe_corpus.vocab.idx_to_token == full_corpus.vocab.idx_to_token
    assert recipe_corpus.corpus == full_corpus.corpus[:10000]


def test_raw_mode_keeps_every_character(time_machine_path):
    c = load_corpus("time_machine", mode="raw", max_tokens=0, download=False)
    text = time_machine_path.read_text(encoding="utf-8")
    assert c.text == text.replace("\r\n", "\n")
    assert "T" in c.vocab and "\n" in c.vocab and "," in c.vocab
    assert c.vocab.decode(c.corpus) == c.text


def test_vocab_semantics():
    v = Vocab("bbaacd", min_freq=2, reserved_tokens=["<pad>"])
    # ties keep first-seen order: b before a; c and d are under min_freq
    assert v.idx_to_token == ["<unk>", "<pad>", "b", "a"]
    assert v["z"] == 0 and v.encode("abz") == [3, 2, 0]
    assert v.decode([2, 3]) == "ba"
    assert Vocab.from_tokens(v.idx_to_token).token_to_idx == v.token_to_idx


@pytest.mark.parametrize(
    "payload, needle",
    [
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"caf\xe9 au lait", "UTF-8"),
    ],
)
def test_bad_user_text_is_refused_clearly(payload, needle):
    with pytest.raises(CorpusError, match=needle):
        load_corpus(payload)


def test_user_text_file_and_bytes(tmp_path):
    p = tmp_path / "story.txt"
    p.write_text("Hello, World!\nSecond line.\n" * 50, encoding="utf-8")
    c = load_corpus(p, mode="book", max_tokens=0)
    assert c.source == "file" and c.text.startswith("hello worldsecond line")
    u = load_corpus(p.read_bytes(), mode="raw", max_tokens=100)
    assert u.source == "upload" and len(u) == 100 and "H" in u.vocab


def test_missing_file_and_bad_mode(tmp_path):
    with pytest.raises(CorpusError, match="No text file"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="mode"):
        load_corpus(b"abc", mode="fancy")


class _Server:
    """A local HTTP server on 127.0.0.1 serving fixed bytes and counting requests."""

    def __init__(self, body: bytes):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/timemachine.txt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARRNN_DATA_DIR", raising=False)
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_verifies_and_caches(time_machine_path, empty_cache):
    server = _Server(Path(time_machine_path).read_bytes())
    try:
        assert data.find_time_machine() is None
        path = data.time_machine_path(url=server.url)
        assert path == empty_cache / "timemachine.txt"
        assert data.sha1_of(path) == data.DATA_SHA1
        assert data.time_machine_path(url=server.url) == path  # cache hit
        assert server.requests == 1
        assert [p.name for p in empty_cache.iterdir()] == ["timemachine.txt"]  # no temp files left
    finally:
        server.close()


def test_corrupted_download_is_refused_and_not_cached(time_machine_path, empty_cache):
    body = bytearray(Path(time_machine_path).read_bytes())
    body[1000] ^= 0x20
    server = _Server(bytes(body))
    try:
        with pytest.raises(CorpusError, match="corrupted.*nothing was cached"):
            data.time_machine_path(url=server.url)
    finally:
        server.close()
    assert not empty_cache.exists() or not any(empty_cache.iterdir())


def test_dead_address_gives_a_clear_error(empty_cache):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CorpusError, match="Could not download.*by hand"):
        data.download_time_machine(f"http://127.0.0.1:{port}/timemachine.txt", timeout=5)


def test_offline_without_copy_says_what_to_do(empty_cache):
    with pytest.raises(CorpusError, match="not on this machine"):
        load_corpus("time_machine", download=False)


def test_wrong_file_in_data_dir_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "timemachine.txt").write_text("not the book")
    monkeypatch.setenv("CHARRNN_DATA_DIR", str(tmp_path))
    with pytest.raises(CorpusError, match="SHA-1"):
        data.find_time_machine()
