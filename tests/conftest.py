"""Test-session defaults."""
import os

# Kernels run op by op unless a test asks for compiled ones (tests/test_kernels.py): compiling
# every variant the suite touches would cost minutes. NEURORATEBP_KERNELS=auto pytest runs the
# whole suite with compiled kernels where they pay off.
os.environ.setdefault("NEURORATEBP_KERNELS", "eager")
