# dropkit from Python: dropout on a NumPy array, a short training run, Monte-Carlo prediction.
# PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py [RUN_DIR]
import sys
import numpy as np
import dropkit

x = np.ones((4, 8), np.float32)
print(dropkit.dropout(x, 0.5, seed=1, layer=0, step=0))  # layer 0's mask at step 0: 0 or 2
run = sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"
dropkit.train(run, overwrite=True, net="dense:64:relu,dropout:0.5,dense:10", epochs=1,
              train_size=2000, val=0)  # Fashion-MNIST (Debian's), 2,000 training images
noise = np.random.default_rng(0).integers(0, 256, (100, 28, 28), np.uint8)
p = dropkit.predict(run, noise, mc=20, seed=3)  # 20 Monte-Carlo samples per image
print("mutual information on noise images:", p["mutual_information"].mean())
