"""``python -m bayesdistill ...``, and ``torchrun --nproc_per_node N -m bayesdistill ...``."""

from bayesdistill.cli.main import main

if __name__ == "__main__":
    main()
