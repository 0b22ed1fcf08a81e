"""The web dashboard's static files (HTML, JS modules, CSS), served by ``api/ui.py`` at
``/ui``; no build step and nothing fetched from elsewhere."""
