"""``python -m hfrl.service ARTIFACT --db PATH --port N``: run the decision service."""

from hfrl.service.server import main

if __name__ == "__main__":
    main()
