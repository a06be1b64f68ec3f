"""`python -m lpcache ...`: the `lpcache` command line without the installed console script."""
from .cli import main

if __name__ == "__main__":
    main()
