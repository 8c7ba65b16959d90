"""Training one cell: its config, the 2020 CNN, the two input pipelines and the trainer.

* :mod:`.config`    ``TrainConfig``, the one definition of a cell's training settings;
* :mod:`.model`     ``LadNet``, the study's CNN;
* :mod:`.pipelines` batch iterators (``paper``: decode every epoch; ``fast``: decoded cache on the device);
* :mod:`.devices`   which devices and precision a cell runs on;
* :mod:`.hostmem`   glibc settings that keep freed activation memory on CPU runs;
* :mod:`.trainer`   ``run_cell``: plan devices, build data, restore, wrap, epochs, finish;
* :mod:`.modelio`   ``best_model.pt`` with the preprocessing inference needs.
"""
