"""The evaluator role: stores results and moves each monitor's status machine."""
