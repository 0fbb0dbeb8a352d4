"""The chat page at / in real headless Chromium (selenium + /usr/bin/chromedriver): log in, stream an answer."""

from __future__ import annotations

import shutil

import pytest

from tests.serve.test_openai_client import live_server  # noqa: F401  (module fixture: uvicorn on 127.0.0.1)

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")


@pytest.mark.skipif(not shutil.which("chromium") or not DRIVER,
                    reason="needs chromium + chromedriver (apt-get install -y chromium chromium-driver)")
def test_chat_page_login_and_streamed_answer(live_server, tmp_path):  # noqa: F811
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base_url, key, app = live_server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        driver.get(base_url.removesuffix("/v1") + "/")
        driver.find_element(By.ID, "key").send_keys("sf-wrong-key")
        driver.find_element(By.ID, "loginBtn").click()
        WebDriverWait(driver, 20).until(lambda d: "login failed (401)" in d.find_element(By.ID, "status").text)
        driver.find_element(By.ID, "key").clear()
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.ID, "loginBtn").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "model").text == app.state.model_id)
        driver.find_element(By.ID, "prompt").send_keys("hello")
        driver.find_element(By.ID, "send").click()
        answer = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".assistant[data-done='1']"))
        shot = tmp_path / "chat.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
        assert "You: hello" in driver.find_element(By.ID, "log").text
        assert answer.get_attribute("data-done") == "1"  # the SSE stream reached [DONE] inside the page
        assert "error" not in answer.text
    finally:
        driver.quit()
