# diod: one command per job. Everything installs itself into .venv first.
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
WORKSPACE ?= runs
DATASET   ?= synth
DATA      ?= data/$(DATASET)
SEED      ?= 0
DIOD      := $(BIN)/diod --workspace $(WORKSPACE)
CONFIG    := configs/$(DATASET).toml

.PHONY: install test test-slow lint format demo all segmenter bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole chain on the built-in synthetic dataset, on CPU. The dataset is deterministic by
# seed: `data synth` reuses one already generated with the same settings. WORLD=street runs
# the 3-D street world with its own preset (configs/street.toml) in its own workspace.
WORLD ?= flat
ifeq ($(WORLD),street)
SYNTH := data/street-seed$(SEED)
demo: WORKSPACE := $(WORKSPACE)/street
demo: CONFIG := configs/street.toml
else
SYNTH := data/synth-seed$(SEED)
endif
demo: install
	$(DIOD) hardware --world $(WORLD)
	$(DIOD) data synth --out $(SYNTH) --seed $(SEED) --world $(WORLD)
	$(MAKE) all DATASET=synth DATA=$(SYNTH) CONFIG=$(CONFIG) WORKSPACE=$(WORKSPACE)

# The whole chain on one dataset, with the preset configs/$(DATASET).toml: flow, motion
# masks (scored as the weakest baseline), burn-in, distillation, each model exported and
# scored, then the results table. INIT=MODEL (a model file from `diod export-model`, or an
# artifact id) skips the burn-in and distils from that model's matching weights, as the
# authors' KITTI recipe does from their TRI-PD model: KITTI needs INIT (INIT=scratch burns
# in on KITTI instead).
INIT ?= $(if $(filter kitti,$(DATASET)),required,scratch)
all: install
	@test "$(INIT)" != required || { echo "make all DATASET=kitti: give INIT=<TRI-PD distill \
	model file or artifact id> (the authors distil their TRI-PD model on KITTI), or \
	INIT=scratch to burn in on KITTI" >&2; exit 2; }
	$(DIOD) --config $(CONFIG) flow --dataset $(DATASET) --root $(DATA)
	$(DIOD) --config $(CONFIG) masks --dataset $(DATASET)
	$(DIOD) --config $(CONFIG) eval --dataset $(DATASET) --masks latest
ifeq ($(INIT),scratch)
	$(DIOD) --config $(CONFIG) train --stage burnin --dataset $(DATASET)
	$(DIOD) --config $(CONFIG) export --dataset $(DATASET) --model burnin
	$(DIOD) --config $(CONFIG) eval --dataset $(DATASET)
endif
	$(DIOD) --config $(CONFIG) train --stage distill --dataset $(DATASET) \
		$(if $(filter scratch,$(INIT)),,--init $(INIT))
	$(DIOD) --config $(CONFIG) export --dataset $(DATASET) --model distill
	$(DIOD) --config $(CONFIG) eval --dataset $(DATASET)
	$(DIOD) --config $(CONFIG) report --dataset $(DATASET)

# The built-in motion segmenter (`diod masks --segmenter builtin`, docs/masks.md): synthetic
# worlds used for nothing else (street seeds 30, 32 at 128x416 and 33; still cameras of seed
# 31 at 384x512; flat seed 34), their DIS flow, `diod segmenter` on all of them (10000 steps),
# then their exact GT flow beside it and the same model fine-tuned on both (5000 steps), and
# the model file copied into the package. About 90 min on a 2-core AMD EPYC (0.29 s per
# step; an Intel Xeon with AMX took 0.13 s); about 1 GB of memory and 18 GB of disk
# (the examples, memory-mapped, deleted at the end).
SEG_DATA := data/segmenter
SEG_WS   := runs-segmenter
SEG_DIOD := $(BIN)/diod --workspace $(SEG_WS)
SEG_SETS := street30:"--world street --seed 30" \
	street32:"--world street --seed 32 --train-videos 48 --size 128x416" \
	still31:"--world street --seed 31 --train-videos 24 --size 384x512 --still-fraction 1" \
	street33:"--world street --seed 33" flat34:"--seed 34"
# the id printed by `diod flow` / `diod segmenter`, and the segmenter's model file
FLOW_ID  := awk '/^flow artifact /{sub(":", "", $$3); print $$3}'
SEG_ID   := awk '/^segmenter /{sub(":", "", $$2); print $$2}'
SEG_FILE := awk '/^segmenter /{print $$NF}'
segmenter: install
	@set -e; dis=; gt=; \
	for set in $(SEG_SETS); do \
		root=$(SEG_DATA)/$${set%%:*}; args=$${set#*:}; \
		eval $(BIN)/diod data synth --out $$root --val-videos 0 $$args; \
		id=$$($(SEG_DIOD) flow --dataset synth --root $$root --model opencv-dis | $(FLOW_ID)); \
		test -n "$$id"; dis="$$dis --flow $$id"; \
		id=$$($(SEG_DIOD) flow --dataset synth --root $$root --model gt | $(FLOW_ID)); \
		test -n "$$id"; gt="$$gt --flow $$id"; \
	done; \
	first=$$($(SEG_DIOD) segmenter --dataset synth $$dis | tee /dev/stderr | $(SEG_ID)); \
	test -n "$$first"; \
	tuned=$$($(SEG_DIOD) segmenter --dataset synth $$dis $$gt --init $$first --steps 5000 \
		--lr 1e-3 | tee /dev/stderr | $(SEG_FILE)); \
	test -n "$$tuned"; cp "$$tuned" stages/masks/learned/models/segmenter.pt

# bench/reference.py is not a benchmark: bench/train.py --reference uses it
bench: install
	for b in $(filter-out bench/reference.py,$(wildcard bench/*.py)); do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
