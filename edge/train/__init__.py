"""Training the trained proxy of Moebius (`moebius-tiny-trained`): photographs -> VAE -> cached latents -> UNet.

Run by `edge train`; the weights it wrote are in `edge/models/trained/`, with their model card.
"""
