"""`python -m analysis STUDY_DIR... [--out DIR] [--format md|html]`: same as `raylab report`."""
import sys

from .report import main

sys.exit(main())
