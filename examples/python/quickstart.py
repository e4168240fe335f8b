# dropkit from Python: PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py
import numpy as np, dropkit
print(dropkit.dropout(np.ones((4, 8), np.float32), 0.5, seed=1))  # kept units doubled: 0 or 2
dropkit.train("runs/quickstart", net="dense:64:relu,dropout:0.5,dense:10", epochs=1, train_size=2000, overwrite=True)
noise = np.random.default_rng(0).integers(0, 256, (100, 28, 28), np.uint8)  # images of nothing
print(dropkit.predict("runs/quickstart", noise, mc=20)["mutual_information"].mean())  # uncertainty
