"""``python -m jaxcnn.configs``: print the recipes page (docs/guides/recipes.md) generated from the recipes."""

import sys

from jaxcnn.configs.page import recipes_page

if __name__ == "__main__":
    sys.stdout.write(recipes_page())
