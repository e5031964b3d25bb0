.PHONY: test demo bench setup
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/setup.sh && .venv/bin/python -m demo
bench:
	bash scripts/setup.sh --bench && .venv/bin/python bench/run.py
