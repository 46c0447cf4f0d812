"""Teacher-student self-distillation (DIOD phase 2, paper 3.3, docs/distillation.md): the parts that do not
depend on the trainer: teacher pseudo-labels, motion-mask filtering, the student's strong
view and the EMA teacher.
"""
