"""The desktop app's Qt layer: views, models, dialogs and the main window.

Everything here only presents what the Qt-free services in `app.services` do. Async work is
started from widgets as tasks on the qasync loop (`app.ui.tasks`); no widget does I/O itself,
and the local proxy runs in a child process, so the GUI thread never moves connection bytes.
"""
