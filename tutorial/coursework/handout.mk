# tutorial/Makefile of a coursework handout: grade your project, and pack it
# to hand in. Read coursework/README.md first, then coursework/PROJECT/BRIEF.md.
#
#   make -C tutorial grade PROJECT=broadcast    build the server of the top folder and grade it
#   make -C tutorial handin PROJECT=broadcast   write handin-broadcast.patch in the top folder
#   make -C tutorial grade PROJECT=broadcast HANDIN=handin-broadcast.patch
#                                               grade the hand-in as your teacher will

PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)

.PHONY: grade handin help

# make -C tutorial runs these in tutorial/: GRADE_FROM passes on the folder
# the command was typed in, so that SOURCE and HANDIN are read from there.
grade: ## grade PROJECT from SOURCE (default: the top folder) or a HANDIN patch
	@test -n "$(PROJECT)" || { echo "usage: make grade PROJECT=broadcast [SOURCE=..|HANDIN=file]"; exit 2; }
	@GRADE_FROM="$(PWD)" $(PYTHON) coursework/grade.py $(PROJECT) \
		$(if $(HANDIN),--handin "$(HANDIN)",$(if $(SOURCE),"$(SOURCE)"))

handin: ## pack your change to the server as handin-PROJECT.patch in the top folder
	@test -n "$(PROJECT)" || { echo "usage: make handin PROJECT=broadcast"; exit 2; }
	@GRADE_FROM="$(PWD)" $(PYTHON) coursework/grade.py $(PROJECT) --pack $(if $(SOURCE),"$(SOURCE)")

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  make %-8s %s\n", $$1, $$2 }'
