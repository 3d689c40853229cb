"""Real-browser helpers: headless Chromium (Debian's) driven by Selenium."""
