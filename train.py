"""Neural style transfer (Gatys et al.) from a config file.

    python train.py --config configs/starry.yaml
    python train.py --config configs/starry.yaml data.size=256 trainer.max_steps=100
    python train.py --config configs/starry.yaml model.weights=torchvision loss.style_weight=100

Any key of the schema (src/nst/config.py) can be overridden as key=value. Bad input exits with status 2 and
a one-line message.
"""

import sys

from nst.cli import exit_now, main

if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
