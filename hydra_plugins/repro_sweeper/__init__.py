"""The repro suite's Hydra plugins. Hydra accepts plugin classes only from the ``hydra_plugins``
namespace package, so the planned sweeper is registered here; its logic is :mod:`repro.sweep_plan`."""
