"""`misr devices` and `misr models`: what this engine can run, and on what."""

from __future__ import annotations

import argparse
import json

from .options import add_json


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list the devices the engine can run on")
    add_json(p)
    p.set_defaults(command=run_devices)
    p = subparsers.add_parser("models", help="list the available models, their shipped weights and abilities")
    add_json(p)
    p.set_defaults(command=run_models)


def run_devices(args: argparse.Namespace) -> None:
    from ..inference.devices import list_devices

    info = list_devices()
    if args.json:
        print(json.dumps(info))
    else:
        for device in info["devices"]:
            print(f"{device['id']}: {device['name']}")


def run_models(args: argparse.Namespace) -> None:
    from ..models.registry import MODELS
    from ..pipeline import limits

    models = [spec.describe() for spec in MODELS.values()]
    if args.json:
        print(json.dumps({"models": models, "limits": limits()}))
    else:
        for model in models:
            print(f"{model['name']} ({model['label']}): {model['weights'] or 'no shipped weights'}; "
                  f"{', '.join(model['capabilities'])}")
            for option in model["weights_options"][1:]:
                print(f"  --weights {option['weights']}: {option['label']}")
