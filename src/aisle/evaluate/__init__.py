"""Evaluation: ranking metrics, the offline protocol, the experiment runner and its reports.

Submodules are imported on use (`from aisle.evaluate.protocol import evaluate`) so that importing the
package stays cheap for the CLI.
"""
