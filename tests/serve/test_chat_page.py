"""The chat page at / in real headless Chromium (selenium driving Debian's /usr/bin/chromium + chromedriver):
log in with a key, stream an answer, show citations when retrieval is on; screenshots into the test's tmp dir.

System packages: `apt-get install -y chromium chromium-driver` (Debian). Without them the test is skipped.
Nothing is downloaded: selenium is given both binaries and told to stay offline (SE_OFFLINE).
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from tests.serve.conftest import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,900")

pytestmark = pytest.mark.skipif(not CHROMIUM or not DRIVER,
                                reason="needs Debian chromium + chromium-driver (apt-get install -y chromium "
                                       "chromium-driver)")


@pytest.fixture()
def browser(tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # a new, empty profile
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _login(driver, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "loginBtn").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "chat").is_displayed())


def _ask(driver, question: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "prompt").send_keys(question)
    driver.find_element(By.ID, "send").click()
    return WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, ".assistant[data-done='1']"))


def test_login_and_streamed_answer(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base_url, key, app = live_server
    url = base_url.removesuffix("/v1")
    browser.get(url + "/")
    browser.find_element(By.ID, "key").send_keys("sf-wrong-key")
    browser.find_element(By.ID, "loginBtn").click()
    WebDriverWait(browser, 20).until(lambda d: "login failed (401)" in d.find_element(By.ID, "status").text)
    browser.find_element(By.ID, "key").clear()
    _login(browser, url, key)
    assert browser.find_element(By.ID, "model").text == app.state.model_id
    answer = _ask(browser, "hello")
    shot = tmp_path / "chat.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    assert "You: hello" in browser.find_element(By.ID, "log").text
    text = answer.text
    assert "error" not in text
    # what the page shows is exactly the answer the gateway streamed and audited (the log keeps its hash)
    shown = browser.execute_script("return arguments[0].textContent", answer)
    record = list(app.state.store.records())[-1]
    assert record["route"] == "/v1/chat/completions" and record["status"] == 200
    assert record["answer_sha256"] == hashlib.sha256(shown.encode()).hexdigest()


def test_citations_shown_with_retrieval(browser, tiny_model, rag_index, tmp_path):
    from selenium.webdriver.common.by import By

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path / "state", force_unpromoted=True,
                                 index=rag_index), backend=EchoTestBackend(tiny_model))
    key = app.state.store.create_key("reader")[1]
    with serving(app) as url:
        _login(browser, url, key)
        browser.find_element(By.ID, "rag").click()
        # the echo backend repeats the question: "[1]" in it plays a model that cites passage 1
        answer = _ask(browser, "군사기밀 누설 국가안전보장 구분은? [1]")
        cites = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".cite")]
        browser.save_screenshot(str(tmp_path / "chat-citations.png"))
    assert "군사기밀 누설 국가안전보장 구분은? [1]" in answer.text
    assert cites and cites[0].startswith("[1]") and "law" in cites[0]
    assert (tmp_path / "chat-citations.png").stat().st_size > 5000
